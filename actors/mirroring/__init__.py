"""Replication actors of the backup and their active-side publishers: DSMirror, FileMirror, InteractionShadow."""
