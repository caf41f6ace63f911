"""The ``visionyard`` command line: thin typer commands; heavy imports only inside commands."""
