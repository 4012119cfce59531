"""Course tooling: the 26-week plan, releasing and grading notebooks, progress."""
