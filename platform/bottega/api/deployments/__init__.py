"""Online and batch deployments with immutable revisions, rollback and a watch endpoint."""
