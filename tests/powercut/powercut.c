// Power-cut simulator: an LD_PRELOAD shim that keeps, for every file in one directory, what a
// disk would still hold after losing power at this instant (docs/powercut.md).
//
//   POWERCUT_DIR    the directory to watch (the outbox's), absolute, no trailing slash
//   POWERCUT_STATE  where the durable image is kept (outside POWERCUT_DIR), absolute
//
// The durable image is:
//   STATE/content/NAME  the content of NAME as of its last fsync/fdatasync: the ranges written
//                       since the previous sync are copied from the real file at each sync, and
//                       the size is the real file's size at that sync;
//   STATE/names         the names that exist durably: the directory's listing as of its last
//                       fsync (creating, renaming and removing are durable only then).
// At start the shim takes what is in POWERCUT_DIR as durable (a disk after a restart).
//
// The harness stops the process with SIGKILL (the cut), then scripts/powercut-restore.py puts
// the durable image in place of POWERCUT_DIR, optionally writing the first bytes of the last
// unsynced write (STATE/torn: "NAME OFFSET LENGTH") to model a torn sector.
//
// Every bookkeeping step happens inside the intercepted call, before it returns, so the image
// is always consistent with what the process has been told is durable. Not modelled: mmap
// writes (SQLite's -shm, which the restore removes: SQLite rebuilds it), O_APPEND, files
// reached through hard links or other directories, and a name reused before the directory's
// fsync (the new file's content is taken for the name).
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FDS 65536
#define MAX_FILES 64
#define MAX_RANGES 4096

struct range { off_t start, end; };
struct file {
    char name[NAME_MAX + 1];  // "" when the slot is free
    struct range ranges[MAX_RANGES];
    int count;
    int overflow;  // too many ranges: the next sync copies the whole file
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char dir[PATH_MAX], state[PATH_MAX];
static size_t dirlen;
static int enabled;
static short fd_kind[MAX_FDS];      // 0 untracked, 1 file, 2 the directory
static short fd_file[MAX_FDS];      // index into files for kind 1
static struct file files[MAX_FILES];

static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_close)(int);
static int (*real_unlink)(const char *);
static int (*real_rename)(const char *, const char *);

static void die(const char *what) {
    char msg[512];
    int n = snprintf(msg, sizeof msg, "powercut shim: %s: %s\n", what, strerror(errno));
    if (n > 0) (void)!real_write(2, msg, (size_t)n);
    _exit(97);
}

// NAME when PATH is directly inside the watched directory, else NULL.
static const char *watched_name(const char *path) {
    if (!enabled || !path || path[0] != '/' || strncmp(path, dir, dirlen) != 0 || path[dirlen] != '/') return NULL;
    const char *name = path + dirlen + 1;
    if (!*name || strchr(name, '/')) return NULL;
    return name;
}

static int is_watched_dir(const char *path) {
    if (!enabled || !path) return 0;
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    return n == dirlen && strncmp(path, dir, dirlen) == 0;
}

static int file_index(const char *name, int create) {
    int free_slot = -1;
    for (int i = 0; i < MAX_FILES; i++) {
        if (files[i].name[0] && strcmp(files[i].name, name) == 0) return i;
        if (!files[i].name[0] && free_slot < 0) free_slot = i;
    }
    if (!create) return -1;
    if (free_slot < 0) { errno = ENFILE; die("too many files in the watched directory"); }
    snprintf(files[free_slot].name, sizeof files[free_slot].name, "%s", name);
    files[free_slot].count = 0;
    files[free_slot].overflow = 0;
    return free_slot;
}

static void content_path(char *out, const char *name) { snprintf(out, PATH_MAX, "%s/content/%s", state, name); }

static void copy_range(int from, int to, off_t start, off_t end) {
    char buf[65536];
    while (start < end) {
        size_t want = (size_t)(end - start) < sizeof buf ? (size_t)(end - start) : sizeof buf;
        ssize_t got = pread(from, buf, want, start);
        if (got < 0) { if (errno == EINTR) continue; die("pread"); }
        if (got == 0) break;
        ssize_t off = 0;
        while (off < got) {
            ssize_t w = real_pwrite(to, buf + off, (size_t)(got - off), start + off);
            if (w < 0) { if (errno == EINTR) continue; die("pwrite shadow"); }
            off += w;
        }
        start += got;
    }
}

static void note_write(int fd, off_t offset, size_t length) {
    if (fd < 0 || fd >= MAX_FDS || fd_kind[fd] != 1 || length == 0) return;
    struct file *f = &files[fd_file[fd]];
    off_t start = offset, end = offset + (off_t)length;
    // Extend the last range when contiguous or overlapping (the common append pattern).
    if (f->count > 0) {
        struct range *r = &f->ranges[f->count - 1];
        if (start <= r->end && end >= r->start) {
            if (start < r->start) r->start = start;
            if (end > r->end) r->end = end;
            goto torn;
        }
    }
    if (f->count == MAX_RANGES) f->overflow = 1;
    else f->ranges[f->count++] = (struct range){start, end};
torn:;
    // The last unsynced write, for a torn-sector restore.
    char path[PATH_MAX], line[NAME_MAX + 64];
    snprintf(path, sizeof path, "%s/torn", state);
    int t = real_open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (t >= 0) {
        int n = snprintf(line, sizeof line, "%s %lld %zu\n", f->name, (long long)offset, length);
        (void)!real_write(t, line, (size_t)n);
        real_close(t);
    }
}

static void sync_file(int fd) {
    struct file *f = &files[fd_file[fd]];
    char path[PATH_MAX];
    content_path(path, f->name);
    int shadow = real_open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (shadow < 0) die("open shadow");
    struct stat st;
    if (fstat(fd, &st) != 0) die("fstat");
    if (f->overflow) {
        copy_range(fd, shadow, 0, st.st_size);
    } else {
        for (int i = 0; i < f->count; i++) {
            off_t end = f->ranges[i].end < st.st_size ? f->ranges[i].end : st.st_size;
            copy_range(fd, shadow, f->ranges[i].start, end);
        }
    }
    if (real_ftruncate(shadow, st.st_size) != 0) die("truncate shadow");
    real_close(shadow);
    f->count = 0;
    f->overflow = 0;
    char torn[PATH_MAX];
    snprintf(torn, sizeof torn, "%s/torn", state);
    real_unlink(torn);
}

// The directory's fsync: the current listing becomes the durable set of names.
static void sync_names(void) {
    char path[PATH_MAX], tmp[PATH_MAX];
    snprintf(path, sizeof path, "%s/names", state);
    snprintf(tmp, sizeof tmp, "%s/names.tmp", state);
    int out = real_open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) die("open names");
    DIR *d = opendir(dir);
    if (!d) die("opendir");
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2]))) continue;
        size_t n = strlen(e->d_name);
        (void)!real_write(out, e->d_name, n);
        (void)!real_write(out, "\n", 1);
    }
    closedir(d);
    real_close(out);
    if (real_rename(tmp, path) != 0) die("rename names");
}

static void opened(int fd, const char *path) {
    if (fd < 0 || fd >= MAX_FDS) return;
    fd_kind[fd] = 0;
    const char *name = watched_name(path);
    if (name) {
        pthread_mutex_lock(&lock);
        fd_kind[fd] = 1;
        fd_file[fd] = (short)file_index(name, 1);
        pthread_mutex_unlock(&lock);
    } else if (is_watched_dir(path)) {
        fd_kind[fd] = 2;
    }
}

static void synced(int fd) {
    if (fd < 0 || fd >= MAX_FDS || !fd_kind[fd]) return;
    pthread_mutex_lock(&lock);
    if (fd_kind[fd] == 1) sync_file(fd);
    else sync_names();
    pthread_mutex_unlock(&lock);
}

// Everything in the directory at start is durable.
static void snapshot(void) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/content", state);
    mkdir(state, 0755);
    mkdir(path, 0755);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2]))) continue;
        char src[PATH_MAX], dst[PATH_MAX];
        snprintf(src, sizeof src, "%s/%s", dir, e->d_name);
        content_path(dst, e->d_name);
        int from = real_open(src, O_RDONLY | O_CLOEXEC);
        if (from < 0) continue;
        int to = real_open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (to < 0) die("snapshot");
        struct stat st;
        fstat(from, &st);
        copy_range(from, to, 0, st.st_size);
        real_close(from);
        real_close(to);
    }
    closedir(d);
    sync_names();
}

__attribute__((constructor)) static void init(void) {
    real_open = dlsym(RTLD_NEXT, "open");
    real_open64 = dlsym(RTLD_NEXT, "open64");
    real_openat = dlsym(RTLD_NEXT, "openat");
    real_write = dlsym(RTLD_NEXT, "write");
    real_pwrite = dlsym(RTLD_NEXT, "pwrite");
    real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
    real_writev = dlsym(RTLD_NEXT, "writev");
    real_ftruncate = dlsym(RTLD_NEXT, "ftruncate");
    real_ftruncate64 = dlsym(RTLD_NEXT, "ftruncate64");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    real_close = dlsym(RTLD_NEXT, "close");
    real_unlink = dlsym(RTLD_NEXT, "unlink");
    real_rename = dlsym(RTLD_NEXT, "rename");
    const char *d = getenv("POWERCUT_DIR"), *s = getenv("POWERCUT_STATE");
    if (!d || !s || d[0] != '/' || s[0] != '/') return;
    snprintf(dir, sizeof dir, "%s", d);
    dirlen = strlen(dir);
    while (dirlen > 1 && dir[dirlen - 1] == '/') dir[--dirlen] = 0;
    snprintf(state, sizeof state, "%s", s);
    enabled = 1;
    snapshot();
}

static mode_t mode_arg(int flags, va_list ap) {
    return (flags & O_CREAT) || (flags & __O_TMPFILE) == __O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    int fd = real_open(path, flags, mode);
    opened(fd, path);
    return fd;
}

int open64(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    int fd = real_open64(path, flags, mode);
    opened(fd, path);
    return fd;
}

int openat(int at, const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    int fd = real_openat(at, path, flags, mode);
    if (at == AT_FDCWD || path[0] == '/') opened(fd, path);
    return fd;
}

int openat64(int at, const char *path, int flags, ...) __attribute__((alias("openat")));

ssize_t write(int fd, const void *buf, size_t n) {
    off_t at = (fd >= 0 && fd < MAX_FDS && fd_kind[fd] == 1) ? lseek(fd, 0, SEEK_CUR) : -1;
    ssize_t w = real_write(fd, buf, n);
    if (w > 0 && at >= 0) { pthread_mutex_lock(&lock); note_write(fd, at, (size_t)w); pthread_mutex_unlock(&lock); }
    return w;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    ssize_t w = real_pwrite(fd, buf, n, off);
    if (w > 0) { pthread_mutex_lock(&lock); note_write(fd, off, (size_t)w); pthread_mutex_unlock(&lock); }
    return w;
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
    ssize_t w = real_pwrite64(fd, buf, n, off);
    if (w > 0) { pthread_mutex_lock(&lock); note_write(fd, off, (size_t)w); pthread_mutex_unlock(&lock); }
    return w;
}

ssize_t writev(int fd, const struct iovec *iov, int count) {
    off_t at = (fd >= 0 && fd < MAX_FDS && fd_kind[fd] == 1) ? lseek(fd, 0, SEEK_CUR) : -1;
    ssize_t w = real_writev(fd, iov, count);
    if (w > 0 && at >= 0) { pthread_mutex_lock(&lock); note_write(fd, at, (size_t)w); pthread_mutex_unlock(&lock); }
    return w;
}

// A truncation is durable at the next sync (the shadow takes the size then); growing by
// ftruncate leaves a hole, zeros either way.
int ftruncate(int fd, off_t length) { return real_ftruncate(fd, length); }
int ftruncate64(int fd, off_t length) { return real_ftruncate64(fd, length); }

int fsync(int fd) {
    int rc = real_fsync(fd);
    if (rc == 0) synced(fd);
    return rc;
}

int fdatasync(int fd) {
    int rc = real_fdatasync(fd);
    if (rc == 0) synced(fd);
    return rc;
}

int close(int fd) {
    if (fd >= 0 && fd < MAX_FDS) fd_kind[fd] = 0;
    return real_close(fd);
}

// The content shadow follows the file: a removed name's content goes when the directory's
// sync drops the name; a renamed file takes its content with it.
int unlink(const char *path) { return real_unlink(path); }

int rename(const char *from, const char *to) {
    int rc = real_rename(from, to);
    const char *a = watched_name(from), *b = watched_name(to);
    if (rc == 0 && a && b) {
        pthread_mutex_lock(&lock);
        char pa[PATH_MAX], pb[PATH_MAX];
        content_path(pa, a);
        content_path(pb, b);
        // The durable image keeps the old name's content under the old name until the
        // directory is synced; the new name gets a copy.
        int from_fd = real_open(pa, O_RDONLY | O_CLOEXEC);
        if (from_fd >= 0) {
            int to_fd = real_open(pb, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            struct stat st;
            fstat(from_fd, &st);
            if (to_fd >= 0) { copy_range(from_fd, to_fd, 0, st.st_size); real_close(to_fd); }
            real_close(from_fd);
        }
        int i = file_index(a, 0);
        if (i >= 0) snprintf(files[i].name, sizeof files[i].name, "%s", b);
        pthread_mutex_unlock(&lock);
    }
    return rc;
}
