"""The audit trail: every mutation writes an event; admins and project members can list and filter them."""
