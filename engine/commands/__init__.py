"""One module per ``python -m engine`` sub-command (``add_arguments`` + ``run``)."""
