"""Where the local stack keeps PostgreSQL: a folder its server's user can reach."""

from pathlib import Path

from rig import stack


def test_the_database_lives_where_its_user_can_walk_to():
    """As root the server runs as postgres; a checkout under root's home (mode 700) is out of its reach, so
    the data goes to a folder of this checkout's own under /var/tmp. Otherwise it stays under .local."""
    assert stack.postgres_home(None, lambda user, folder: False) == stack.STATE  # not root: our own folder
    assert stack.postgres_home("postgres", lambda user, folder: True) == stack.STATE
    elsewhere = stack.postgres_home("postgres", lambda user, folder: False)
    assert elsewhere.parent == Path("/var/tmp") and elsewhere.name.startswith("btcpred-")
    assert elsewhere == stack.postgres_home("postgres", lambda user, folder: False)  # the same checkout, the same folder
