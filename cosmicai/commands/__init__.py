"""The ``cosmicai`` subcommands, one module each: ``add_arguments(parser)`` and ``main(args) -> exit code``.

``REGISTRY`` maps a command's name to its module and one-line help, in the
order ``cosmicai --help`` lists them; the CLI imports a module only to build
its parser, so a command pays only for its own imports at run time.
"""

REGISTRY: dict[str, tuple[str, str]] = {
    "run": ("cosmicai.commands.run", "run the whole pipeline (default: embedded target, generated data)"),
    "local": ("cosmicai.commands.local", "run one partition in this process (the reference's 'Local' row)"),
    "data": ("cosmicai.commands.data", "make or split partition files"),
    "deploy": ("cosmicai.commands.deploy", "deploy the pipeline into a running emulator (or another target)"),
    "destroy": ("cosmicai.commands.destroy", "delete every resource a deploy created (tagged with the stack)"),
    "logs": ("cosmicai.commands.logs", "print a function's CloudWatch log lines"),
    "emulator": ("cosmicai.commands.emulator", "serve the embedded emulator on 127.0.0.1"),
    "localstack": ("cosmicai.commands.localstack", "run real LocalStack 4.14.0 on 127.0.0.1 without Docker (host mode)"),
    "doctor": ("cosmicai.doctor", "say what this machine can run (Docker, LocalStack, AWS credentials, torch)"),
    "bench": ("cosmicai.study.bench", "sweep data sizes, batch sizes and world sizes through the pipeline; write results.csv, report.md and plots"),
    "report": ("cosmicai.study.report", "draw one run's per-rank timeline, throughput and memory beside its summary"),
    "cost": ("cosmicai.study.cost", "project what a run costs on real AWS (prices and assumptions printed)"),
}
