"""Side effects built on plans and stores: seed, inventory, checks, build, rotate, report."""
