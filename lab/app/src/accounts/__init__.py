"""User profiles on top of django.contrib.auth's User."""
