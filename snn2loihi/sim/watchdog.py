"""Run a Lava network under a watchdog, so that a failure inside the run cannot hang it.

Lava's CPU runtime (lava-nc 0.10) steps its process models in lock step: each time step
the runtime service waits, model by model, for every model's answer. When a process model
raises (in ``run_spk``, say), the model tells the service and exits, but the models that
wait for its spikes never answer, so the service, and with it ``process.run``, waits
forever; Ctrl-C does not end it either (see ``tests/test_reliability.py``).

:func:`run_watched` starts the run without blocking and polls it every ``POLL_S`` seconds:

- the runtime service has answered: the run is over; Lava collects the answers (and, on
  Lava's own error path, raises) and the runtime is stopped normally;
- one of the runtime's processes (a process model, the runtime service) has died, or the
  run exceeded ``timeout_s``: every process of the runtime is killed, its shared-memory
  manager is shut down, and :class:`~snn2loihi.errors.LavaRunError` names the exception of
  the model that failed.

Either way no process of the run outlives it. The functions use Lava's private runtime
attributes (``_messaging_infrastructure``, ``_is_started``); lava-nc is pinned by lava-dl.
"""
from __future__ import annotations

import time
from typing import Optional

from ..errors import LavaRunError

#: Seconds between two looks at a running Lava runtime.
POLL_S = 0.02


def run_watched(process, num_steps: int, run_cfg, timeout_s: Optional[float] = None) -> None:
    """``process.run(RunSteps(num_steps), run_cfg)`` that fails fast instead of hanging.

    Args:
        process: any process of the (connected) network to run.
        num_steps: time steps to run.
        run_cfg: the Lava run configuration (e.g. ``Loihi2SimCfg(select_tag="fixed_pt")``).
        timeout_s: wall-clock limit of the run itself (compilation excluded); None: none.

    Raises:
        LavaRunError: the run failed or timed out; the runtime has been stopped and all its
            processes have ended.
    """
    from lava.magma.core.run_conditions import RunSteps

    try:
        process.run(condition=RunSteps(num_steps=num_steps, blocking=False), run_cfg=run_cfg)
        _wait_for_answer(process.runtime, timeout_s)
        process.runtime.wait()  # collects the services' answers; raises on Lava's error path
    except LavaRunError:
        _abort(process)
        raise
    except Exception as err:  # Lava raises bare Exceptions (compiler, runtime)
        reason = _failures(process) or f"{type(err).__name__}: {_first_line(err)}"
        _abort(process)
        raise LavaRunError(f"Lava run failed: {reason}") from err
    except BaseException:  # KeyboardInterrupt: leave no Lava process behind either
        _abort(process)
        raise
    process.stop()


def _wait_for_answer(runtime, timeout_s: Optional[float]) -> None:
    """Poll until every runtime service has answered; raise if a process died or time ran out."""
    actors = runtime._messaging_infrastructure.actors
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while not all(port.probe() for port in runtime.service_to_runtime):
        dead = [actor for actor in actors if not _alive(actor)]
        if dead:
            reason = _exceptions(dead) or f"{len(dead)} Lava process(es) died without an exception"
            raise LavaRunError(f"Lava run failed: {reason}")
        if deadline is not None and time.monotonic() > deadline:
            raise LavaRunError(f"Lava run did not finish within {timeout_s:g} s; stopped it")
        time.sleep(POLL_S)


def _abort(process) -> None:
    """Kill every process of ``process``'s runtime and release its resources."""
    runtime = process.runtime
    infra = getattr(runtime, "_messaging_infrastructure", None) if runtime is not None else None
    if infra is None:  # compilation failed: nothing was started
        return
    for actor in infra.actors:
        if _alive(actor):
            actor.kill()
    # With these cleared, stop() does not wait for answers from killed processes: it only
    # joins them and shuts down the shared-memory manager and the watchdog manager.
    runtime._is_running = runtime._is_started = False
    try:
        runtime.stop()
    except Exception:  # noqa: BLE001 - cleanup of a failed run must not mask its error
        pass


def _alive(actor) -> bool:
    try:
        return actor.is_alive()
    except ValueError:  # a joined and closed process
        return False


def _failures(process) -> str:
    """The exceptions the runtime's processes reported, if any ('' when none)."""
    runtime = process.runtime
    infra = getattr(runtime, "_messaging_infrastructure", None) if runtime is not None else None
    return _exceptions(infra.actors) if infra is not None else ""


def _exceptions(actors) -> str:
    found = []
    for actor in actors:
        try:
            failure = actor.exception  # (exception, traceback text) sent by a failed actor
        except (OSError, EOFError, ValueError):
            continue
        if failure:
            found.append(f"{type(failure[0]).__name__}: {_first_line(failure[0])}")
    return "; ".join(found)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__
