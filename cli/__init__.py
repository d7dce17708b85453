"""The command line and the server start: the one floor that may import both the app
(``dashboard``) and the development environment (``tooling``)."""
