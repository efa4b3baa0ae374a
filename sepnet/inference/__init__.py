"""The one inference path: front end -> model -> masks -> iSTFT (Separator), and whole tracks in chunks (OverlapAdd)."""
