"""`metricloop users …`: the people of the web console, their role and their metric domains.

Passwords are read from a hidden prompt (asked twice) or, for scripts, from standard input with
--password-stdin; they are never echoed, never taken as an argument (it would land in the shell's history) and
never logged.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from metricloop.errors import MetricloopError

console = Console()

PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input (first line).")
]


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise MetricloopError("no password on standard input", where="--password-stdin")
        return password
    password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


def register(app: typer.Typer) -> None:
    from metricloop import cli

    users_app = typer.Typer(help="Users of the web console: roles and metric domains.", no_args_is_help=True)
    app.add_typer(users_app, name="users")

    @users_app.command("add")
    def users_add(
        name: Annotated[str, typer.Argument(help="Login name (any language, e.g. 王芳).")],
        role: Annotated[str, typer.Option(help="viewer, operator or admin")] = "viewer",
        domains: Annotated[
            str, typer.Option(help="Metric domains, comma-separated, e.g. sales,service (admins see all).")
        ] = "",
        display_name: Annotated[str, typer.Option("--display-name", help="Name shown in the console.")] = "",
        email: Annotated[str, typer.Option(help="E-mail address.")] = "",
        password_stdin: PasswordStdin = False,
    ) -> None:
        """Add a user; the password is asked for (hidden) or read with --password-stdin."""
        from metricloop.auth.users import add_user

        password = read_password(password_stdin)
        ws = cli.open_ws()
        with ws.db.session() as s:
            u = add_user(
                s, name=name, password=password, role=role, domains=domains, display_name=display_name, email=email
            )
            where = "all domains" if u.role == "admin" else ", ".join(u.domains) or "no domain yet"
        console.print(f"[green]✓[/] user '{name}' ({role}; {where})", highlight=False)

    @users_app.command("list")
    def users_list() -> None:
        """Users with their role and domains (never a password)."""
        from rich.table import Table

        from metricloop.auth.users import list_users

        ws = cli.open_ws()
        with ws.db.session() as s:
            rows = [
                (u.name, u.display_name, u.email, u.role, u.domains, u.created_at, u.disabled_at) for u in list_users(s)
            ]
        table = Table()
        for c in ("name", "display name", "e-mail", "role", "domains", "created", "disabled"):
            table.add_column(c)
        for name, display, email, role, domains, created, disabled in rows:
            table.add_row(
                name,
                display,
                email,
                role,
                "all" if role == "admin" else ", ".join(domains),
                f"{created:%Y-%m-%d}",
                f"{disabled:%Y-%m-%d}" if disabled else "",
            )
        console.print(table)

    @users_app.command("set-role")
    def users_set_role(name: str, role: Annotated[str, typer.Argument(help="viewer, operator or admin")]) -> None:
        """Change a user's role."""
        from metricloop.auth.users import set_role

        ws = cli.open_ws()
        with ws.db.session() as s:
            set_role(s, name=name, role=role)
        console.print(f"[green]✓[/] user '{name}' is now {role}", highlight=False)

    @users_app.command("set-domains")
    def users_set_domains(
        name: str, domains: Annotated[str, typer.Argument(help="Metric domains, comma-separated ('' for none).")]
    ) -> None:
        """Set the metric domains a user sees and acts in."""
        from metricloop.auth.users import set_domains

        ws = cli.open_ws()
        with ws.db.session() as s:
            u = set_domains(s, name=name, domains=domains)
            shown = ", ".join(u.domains) or "none"
        console.print(f"[green]✓[/] user '{name}' domains: {shown}", highlight=False)

    @users_app.command("reset-password")
    def users_reset_password(name: str, password_stdin: PasswordStdin = False) -> None:
        """Set a new password; the user's console sessions end."""
        from metricloop.auth.users import get_user, reset_password

        ws = cli.open_ws()
        with ws.db.session() as s:
            get_user(s, name)  # an unknown name fails before the prompt
        password = read_password(password_stdin)
        with ws.db.session() as s:
            reset_password(s, name=name, password=password)
        console.print(f"[green]✓[/] password of '{name}' reset; their sessions have ended", highlight=False)

    @users_app.command("token")
    def users_token(
        name: str, token_name: Annotated[str, typer.Argument(help="A name for the token, e.g. wang-laptop.")]
    ) -> None:
        """Create an API token for a user: it acts with the user's role and domains. It is shown once."""
        from metricloop.auth.service import create_token
        from metricloop.auth.users import get_user

        ws = cli.open_ws()
        with ws.db.session() as s:
            u = get_user(s, name)
            token = create_token(s, name=token_name, role=u.role, user=u.name, user_id=u.id)
        console.print(f"[green]✓[/] token '{token_name}' of user '{name}'; keep it safe, it is not shown again:")
        sys.stdout.write(token + "\n")
