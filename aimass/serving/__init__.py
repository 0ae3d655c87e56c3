"""HTTP-free services behind the routes: they take a typed call context, never a Request."""
