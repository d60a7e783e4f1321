"""Errors a user can cause and fix; the entry points print them as one line, without a traceback."""


class UserError(Exception):
    """Something in the user's config, data or environment is wrong; the message says what to do."""


class ConfigError(UserError):
    """A config value is out of range or makes no sense with another one."""


class SweepError(UserError):
    """The sweep file or the launcher's options cannot work; the message says what to change."""
