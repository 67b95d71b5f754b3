"""Landmark systems rebuilt small (notebook 10): each one's key idea, from the course's own parts."""
