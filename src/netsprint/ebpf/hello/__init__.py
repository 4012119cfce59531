"""Week 8 hello world: every execve(2) on the machine as a ring-buffer event."""
