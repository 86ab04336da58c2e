<?php echo "<h1>Photo shop</h1>";
