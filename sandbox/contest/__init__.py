"""The health-data contest: contests, tracks, teams, submissions, scoring, leaderboards."""
