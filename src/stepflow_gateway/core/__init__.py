"""Value types shared by every layer (results and their errors); this package imports nothing of ours."""
