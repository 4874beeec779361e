//! Route tables to Envoy resources: listeners, the route configuration and clusters.
