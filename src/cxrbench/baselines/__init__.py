"""Reference methods that need no model: bounds and priors."""
