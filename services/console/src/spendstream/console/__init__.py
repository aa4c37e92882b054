"""console: the web console, static pages that talk to the services' public HTTP APIs with the member's session."""
