"""Defaults for every host; an inventory entry overrides them."""

ssh_user = "root"
