"""The Celery side: the app, tasks, the broker and the sweeper."""
