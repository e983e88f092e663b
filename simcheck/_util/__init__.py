"""Helpers every stage uses and no user needs: atomic files and versions (`io`), output
paths checked before work (`paths`), progress bars (`progress`), modules imported on first
use (`lazy_import`), figures that show inline (`plotting`)."""
