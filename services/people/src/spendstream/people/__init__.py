"""people: members, roles, sign-in and sessions, invitations."""
