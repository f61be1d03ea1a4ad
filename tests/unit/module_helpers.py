"""Run a module's main() in-process and get its result dict back.

    from tests.unit.module_helpers import run_module_main
    from ansible_collections.upkeep.runbooks.plugins.modules import report

    result = run_module_main(report, {"cadence": "daily", "results": []}, check_mode=True)
    assert result.exit_code == 0 and result["changed"]

main() ends in exit_json/fail_json, which print the JSON result to stdout and raise
SystemExit. The helper feeds the arguments the way ansible-core 2.19 expects
(ansible.module_utils.testing.patch_module_args; older cores: basic._ANSIBLE_ARGS),
captures stdout and parses it, so the result is exactly what a controller would see,
including no_log masking and JSON serialisation. Backends are mocked by the caller at
module_utils level (unittest.mock.patch on the name the module imported).
"""

import contextlib
import importlib
import io
import json
from unittest import mock

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core < 2.19
    patch_module_args = None


class ModuleResult(dict):
    """The module's result dict, plus how main() ended."""

    exit_code = None
    stdout = ""

    @property
    def failed(self):
        return bool(self.get("failed"))


@contextlib.contextmanager
def _module_args(args):
    if patch_module_args is not None:
        with patch_module_args(args):
            yield
        return
    from ansible.module_utils import basic  # noqa: PLC0415 - only for old cores

    payload = json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()
    with mock.patch.object(basic, "_ANSIBLE_ARGS", payload):
        yield


@contextlib.contextmanager
def _as_managed_node():
    """Make module warnings land in the result, as on a managed node.

    Once a test in the same process has imported controller code (filter plugins, Display),
    ansible-core 2.19 sends module.warn() to the controller's display instead of the result.
    Each run starts with no warnings left over from an earlier run in the same process.
    """
    try:
        from ansible.module_utils import _internal  # noqa: PLC0415 - ansible-core >= 2.19 only
        from ansible.module_utils.common import warnings as module_warnings  # noqa: PLC0415
    except ImportError:
        yield
        return
    with mock.patch.object(_internal, "is_controller", False), \
            mock.patch.dict(module_warnings._global_warnings, clear=True), \
            mock.patch.dict(module_warnings._global_deprecations, clear=True):
        yield


def run_module_main(module, args, check_mode=False, diff=False):
    """Call module.main() with args; return its result as a ModuleResult.

    ``module`` is the imported module object or its dotted name. Raises AssertionError when
    main() returns without exiting or prints something that is not one JSON document (a
    traceback, a stray print), which is itself a bug worth failing a test for.
    """
    if isinstance(module, str):
        module = importlib.import_module(module)
    args = dict(args or {})
    if check_mode:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True

    stdout = io.StringIO()
    exit_code = None
    with _module_args(args), _as_managed_node(), contextlib.redirect_stdout(stdout):
        try:
            module.main()
        except SystemExit as exc:
            exit_code = exc.code
    text = stdout.getvalue()
    if exit_code is None:
        raise AssertionError("main() returned without calling exit_json or fail_json; stdout: %r" % text)
    try:
        data = json.loads(text)
    except ValueError:
        raise AssertionError("module printed something other than one JSON document: %r" % text) from None
    result = ModuleResult(data)
    result.exit_code = exit_code
    result.stdout = text
    return result
