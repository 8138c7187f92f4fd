// pgJDBC client for the client tests: connects with a JDBC URL (one or several pgsplit hosts), runs each statement given, prints the first column of each result.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.Statement;
import java.util.Properties;

public class JdbcStatements {
  public static void main(String[] args) throws Exception {
    if (args.length < 4) {
      System.err.println("usage: JdbcStatements JDBC_URL USER PASSWORD SQL...");
      System.exit(2);
    }
    Properties props = new Properties();
    props.setProperty("user", args[1]);
    props.setProperty("password", args[2]);
    try (Connection c = DriverManager.getConnection(args[0], props); Statement s = c.createStatement()) {
      for (int i = 3; i < args.length; i++) {
        try (ResultSet r = s.executeQuery(args[i])) {
          r.next();
          System.out.println(r.getString(1));
        }
      }
    }
  }
}
