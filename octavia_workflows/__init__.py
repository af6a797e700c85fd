"""octavia-workflows: durable, resumable operator runbooks for Octavia."""
