class BackupError(Exception):
    """A backup or restore cannot go on; the message is one line saying why and what to do."""
