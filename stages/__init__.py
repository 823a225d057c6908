"""The deploy's stages that run on the controller, not on the host: publishing DNS records through the spec's
provider (`dns`) and verifying the host from outside once it is converged (`verify`). The host's own services
are `roles/`."""
