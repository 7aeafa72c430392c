"""Training the embedded shapes-world model. The library never imports this package."""
