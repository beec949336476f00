"""Train the example: `python main.py` (the same as `deepleaps run`)."""

from deepleaps.app.app import App

if __name__ == "__main__":
    raise SystemExit(App("resource/configs/default.yaml").run())
