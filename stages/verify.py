"""Verify stage: after the last operation, check each converged host from outside (`mailhost.verify`) and
print the report. A report with errors fails the host, so the deploy exits non-zero.

It is a pyinfra state callback, not an operation: verify reads and never changes anything, and an
operation that runs code every time would count as a change on every run. A dry run executes no
operations, so it never verifies.
"""

from __future__ import annotations

import threading

from pyinfra import host, logger, state
from pyinfra.api import operation
from pyinfra.api.state import BaseStateCallback

from mailhost import hostinfo
from mailhost.spec import Spec
from mailhost.verify import Target, verify

_TARGETS: dict[str, Target] = {}  # host name -> what to verify


# Shell commands at once on the host's one SSH connection: verify runs its on-host checks side by side, and
# sshd serves at most MaxSessions (10 by default) sessions on a connection, counting a session until both
# sides have closed it; more are refused ("open failed: Connect failed").
SESSIONS = 4


def _runner(pyinfra_host):
    sessions = threading.BoundedSemaphore(SESSIONS)

    def run(command: str) -> str:
        try:
            with sessions:
                ok, output = pyinfra_host.run_shell_command(command)
        except Exception as exc:  # paramiko's, whose text names no secret; the check reports it as not done
            raise OSError(f"no shell on {pyinfra_host.name}: {exc.__class__.__name__}") from None
        if not ok and not output.stdout:
            raise OSError(f"command failed on {pyinfra_host.name}: {output.stderr[-300:]}")
        return output.stdout
    return run


class VerifyAtTheEnd(BaseStateCallback):
    @staticmethod
    def operation_end(state, op_hash) -> None:
        if op_hash != state.get_op_order()[-1]:
            return
        for name, target in sorted(_TARGETS.items()):
            pyinfra_host = state.inventory.get_host(name)
            if pyinfra_host in state.failed_hosts:
                continue
            target.run = _runner(pyinfra_host)
            # A host that changed nothing may still be starting (after a reboot rspamd loads for a while, and
            # submissions wait for it): verify looks at the host once it has settled.
            settled, _ = pyinfra_host.run_shell_command(hostinfo.rspamd_answers(target.spec.features.controller))
            if not settled:
                logger.warning(f"--> rspamd on {name} does not answer after ten minutes; verifying all the same")
            report = verify(target)
            logger.info(f"\n--> Verify {target.spec.hostname} ({name}):\n{report.text(color=False)}")
            if report.exit_code(strict=bool(pyinfra_host.data.get("verify_strict"))):
                logger.error(f"--> Verify of {target.spec.hostname} failed")
                state.failed_hosts.add(pyinfra_host)


@operation(is_idempotent=True)
def _last():
    """A marker that runs last: the report follows it."""
    host.noop("the verify report follows")
    yield from ()  # an operation is a generator of commands; this one has none


def apply(spec: Spec) -> None:
    if not any(isinstance(h, VerifyAtTheEnd) for h in state.callback_handlers):
        state.add_callback_handler(VerifyAtTheEnd())
    _TARGETS[host.name] = Target(spec)
    _last(name="Verify from outside after the deploy")
