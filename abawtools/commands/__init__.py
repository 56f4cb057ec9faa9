"""One module per `abaw` subcommand; each defines `cli`. Keep heavy imports inside functions."""
