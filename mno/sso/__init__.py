"""Single sign-on: the hub's browser sessions, its sign-in and its OpenID Connect provider."""
