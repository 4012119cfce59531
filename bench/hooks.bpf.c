// Empty programs for bench/hooks.py: what attaching alone costs, before a program does
// anything. ns_hook_tp_* attach as tracepoints (the kernel fills the event's record, then
// runs the program), ns_hook_raw_* as raw tracepoints (the program gets the tracepoint's
// arguments as they are, no record).
int ns_hook_tp_probe(void *ctx) { return 0; }
int ns_hook_raw_probe(void *ctx) { return 0; }
