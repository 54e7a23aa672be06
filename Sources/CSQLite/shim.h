#ifndef CSQLITE_SHIM_H
#define CSQLITE_SHIM_H
#include <sqlite3.h>
/* SQLITE_TRANSIENT casts -1 to a function pointer, which Swift cannot import. */
static const sqlite3_destructor_type csqlite_transient = SQLITE_TRANSIENT;
#endif
