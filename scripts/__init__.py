"""Project scripts (a package only so that type checkers give them unique module names)."""
