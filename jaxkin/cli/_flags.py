"""The library names its parameters in its errors (``"erode 5: nothing is left ..."``); the commands name the flags
that set them (``"--erode 5: ..."``)."""

from __future__ import annotations

from jaxkin.errors import InputError


def flag_named(err: InputError, flags: dict[str, str]) -> InputError:
    """``err`` with the parameter name that starts its message replaced by the flag that sets it (``flags``:
    parameter -> flag); ``err`` itself when its message starts with none of them."""
    text = str(err)
    for name, flag in flags.items():
        if text.startswith((name + " ", name + ":")):
            return InputError(flag + text[len(name):])
    return err
