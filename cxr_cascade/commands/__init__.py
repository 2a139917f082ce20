"""Sub-commands of the `cxr-cascade` command line (see `cxr_cascade.cli`)."""
