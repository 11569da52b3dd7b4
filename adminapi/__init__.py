"""The admin HTTP application: REST API, web pages, autoconfig."""
