"""The intake's HTTP routes, one router per area of DESIGN section 10."""
