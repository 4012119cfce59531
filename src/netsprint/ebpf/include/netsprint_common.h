// Shared by the workbook's BPF programs and by their event headers.
//
// Event headers (`<program>.h`) use only <linux/types.h> types (__u8, __u32, __u64) so that
// bcc compiles them into the program and gcc compiles them in the ctypes-mirror size tests.
#ifndef NETSPRINT_COMMON_H
#define NETSPRINT_COMMON_H

#include <linux/types.h>

#define NETSPRINT_COMM_LEN 16  // TASK_COMM_LEN in the kernel

#endif
