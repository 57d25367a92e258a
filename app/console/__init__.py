"""The web console: a static single-page app over /api/v1, served at /console."""
