"""One pyinfra role per service. Each role's `apply()` is a `@deploy` in install -> configure -> activate order."""
