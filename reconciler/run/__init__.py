"""The workflows the commands share: connect, lock, read, plan, apply; one account or many."""
