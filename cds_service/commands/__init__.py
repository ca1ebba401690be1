"""The `cds-service` commands, one module each (registered lazily by cds_service.cli)."""

#: Every command accepts -h as well as --help, whether run through the group or alone
#: (click caches a command's help option the first time it runs).
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}
