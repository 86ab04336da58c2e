<?php
// Stores an uploaded photo under /srv/www/uploads (runs as www-data).
require __DIR__ . '/../config/settings.php';
$target = UPLOAD_DIR . '/' . basename($_FILES['photo']['name']);
if (!move_uploaded_file($_FILES['photo']['tmp_name'], $target)) {
    error_log("move_uploaded_file($target): Permission denied");
    http_response_code(500);
}
