<?php
define('UPLOAD_DIR', '/srv/www/uploads');
define('DB_DSN', 'sqlite:/srv/www/shop.db');
