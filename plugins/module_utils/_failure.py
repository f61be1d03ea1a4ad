# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The exception a module's helpers raise to end the module with ``fail_json``.

Helpers deep inside a module raise ``Failure("Failed to <verb> <object>: <cause>", key=value)``;
the module's ``main()`` catches it once and calls ``module.fail_json(msg=exc.msg, **exc.extra)``.
The message and the extra keys are returned to the user: never put a secret in them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class Failure(Exception):
    """Ends the module with ``fail_json(msg, **extra)``."""

    def __init__(self, msg, **extra):
        super(Failure, self).__init__(msg)
        self.msg = msg
        self.extra = extra
