"""Platform jobs: job types, ad-hoc runs, cron schedules, the scheduler and workers."""
