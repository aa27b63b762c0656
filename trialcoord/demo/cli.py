"""`trialcoord demo`: the demo study, for trying the system out."""

from __future__ import annotations

from trialcoord.kernel import command_support as support


def register(commands) -> None:
    commands.add_parser("demo", help="load the demo study and participants when the database is empty").set_defaults(
        run=lambda a: demo()
    )


def demo() -> int:
    from trialcoord.demo.demo import load_demo, personal_data_available
    from trialcoord.kernel.database.opening import open_database

    async def run() -> bool:
        async with open_database(migrate=True):
            return await load_demo(support.today())

    loaded = support.run(run())
    print("demo study loaded" if loaded else "demo study already present; nothing changed")
    if loaded and not personal_data_available():
        print(
            "the participants' made-up personal data was left out: no personal-data key"
            " (run `trialcoord setup`, or set TRIALCOORD_PII_KEY_FILE)"
        )
    return 0
