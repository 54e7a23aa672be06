// libFuzzer's driver entry point (compiler-rt, linked by -sanitize=fuzzer).
//
// SwiftPM links every executable with `--defsym main=<Module>_main` (so tests can import it),
// which replaces libFuzzer's own main; each harness therefore has an @main that hands its
// arguments and its LLVMFuzzerTestOneInput to this driver.
#ifndef CFUZZDRIVER_H
#define CFUZZDRIVER_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
