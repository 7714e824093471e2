"""The console's static files (index.html, app.js, app.css), served by web.console."""
